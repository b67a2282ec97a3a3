"""Reading images and writing label images (no GUI imports)."""

from seglab.io.images import IMAGE_SUFFIXES, ImageData, guess_channel_axis, list_images, read_image, read_image_data
from seglab.io.labels import labels_dtype, read_labels, write_labels
from seglab.io.tables import write_table_csv

__all__ = [
    "IMAGE_SUFFIXES",
    "ImageData",
    "guess_channel_axis",
    "labels_dtype",
    "list_images",
    "read_image",
    "read_image_data",
    "read_labels",
    "write_labels",
    "write_table_csv",
]
