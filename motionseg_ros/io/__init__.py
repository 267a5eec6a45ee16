"""Frame sources (video, image folder, DAVIS sequence) and result writers."""

from motionseg_ros.io.sources import FrameSource, SourceError, open_source

__all__ = ['FrameSource', 'SourceError', 'open_source']
