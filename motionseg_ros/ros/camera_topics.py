"""Input topic names of one camera, derived the way image_transport pairs them.

The launch file takes one ``image_topic`` (relative names follow ``namespace``) and derives the
rest unless given: ``camera_info`` is the image's sibling (``/front/camera/image_raw`` ->
``/front/camera/camera_info``, image_transport's rule) and ``depth`` is
``<image's folder>/depth/image_raw``. Plain Python (no ROS import) so a test checks it without
launch_ros; the warnings name setups that silently read another camera's data.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

# image_transport suffixes: the node adds /compressed itself (compressed: true)
TRANSPORTS = ('compressed', 'compressedDepth', 'theora', 'zstd', 'ffmpeg')


@dataclass
class CameraTopics:
    """Fully qualified input topics of segment_node, and what looks wrong about them."""

    image: str
    camera_info: str
    depth: str
    warnings: List[str] = field(default_factory=list)


def resolve(name: str, namespace: str = '', node: str = 'segment_node') -> str:
    """Fully qualified ``name`` as seen by node ``node`` in ``namespace`` (rcl's rules)."""
    ns = '/' + namespace.strip('/') if namespace.strip('/') else ''
    if name.startswith('/'):
        out = name
    elif name.startswith('~'):
        out = f'{ns}/{node}/{name[1:].lstrip("/")}'
    else:
        out = f'{ns}/{name}'
    return '/' + '/'.join(part for part in out.split('/') if part)


def parent(topic: str) -> str:
    """Folder of a fully qualified topic: ``/a/b/c`` -> ``/a/b``; ``/c`` -> ``''``."""
    return topic.rsplit('/', 1)[0]


def camera_topics(image_topic: str, namespace: str = '', camera_info_topic: str = '',
                  depth_topic: str = '') -> CameraTopics:
    """Resolve the image topic and derive (or check) camera_info and depth beside it.

    Empty ``camera_info_topic`` / ``depth_topic`` mean "derive from the image topic".
    Raises ValueError on an empty image topic.
    """
    if not image_topic.strip('/ '):
        raise ValueError('image_topic is empty: name the camera image topic, e.g. '
                         'image_topic:=/front/camera/image_raw')
    warnings: List[str] = []
    image = resolve(image_topic.strip(), namespace)
    base = image
    if image.rsplit('/', 1)[1] in TRANSPORTS:
        base = parent(image)
        warnings.append(
            f'image_topic {image} is a transport topic: pass the raw topic {base} and set '
            f'compressed: true in the params file (the node subscribes to <image>/compressed)')
    folder = parent(base)
    sibling = f'{folder}/camera_info'
    if camera_info_topic.strip():
        camera_info = resolve(camera_info_topic.strip(), namespace)
        if parent(camera_info) != folder:
            warnings.append(
                f'camera_info_topic {camera_info} is not beside image_topic {base} (expected '
                f'{sibling}): intrinsics of another camera would go unnoticed')
    else:
        camera_info = sibling
    depth = (resolve(depth_topic.strip(), namespace) if depth_topic.strip()
             else f'{folder}/depth/image_raw')
    ns = resolve('', namespace) if namespace.strip('/') else ''
    if ns and not (image + '/').startswith(ns + '/'):
        warnings.append(
            f'image_topic {image} is outside namespace {ns}: this node reads a camera that is '
            f'not its own unless that is intended (a relative image_topic follows namespace)')
    names = {'image': base, 'camera_info': camera_info, 'depth': depth}
    seen = {}
    for key, topic in names.items():
        if topic in seen:
            warnings.append(f'{key} and {seen[topic]} are the same topic {topic}')
        seen.setdefault(topic, key)
    return CameraTopics(image=base, camera_info=camera_info, depth=depth, warnings=warnings)
