"""Rosbag tools without ROS: read images from rosbag2 / ROS 1 bags, write rosbag2 bags."""

from motionseg_ros.bags.reader import (BagError, BagImage, BagMessage, BagReader, TopicInfo,
                                       normalize_type, read_images)

__all__ = ['BagError', 'BagImage', 'BagMessage', 'BagReader', 'TopicInfo', 'normalize_type',
           'read_images']
