"""Media input: sniffing, the one image loader, video frames."""

from noisetrace.media.formats import IMAGE_EXTENSIONS, MEDIA_EXTENSIONS, VIDEO_EXTENSIONS, sniff
from noisetrace.media.image import decode_image, encode_jpeg, load_image
from noisetrace.media.video import Frame, iter_frames, read_frames, write_video

__all__ = [
    "IMAGE_EXTENSIONS",
    "MEDIA_EXTENSIONS",
    "VIDEO_EXTENSIONS",
    "Frame",
    "decode_image",
    "encode_jpeg",
    "iter_frames",
    "load_image",
    "read_frames",
    "sniff",
    "write_video",
]
