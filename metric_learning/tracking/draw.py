"""Tracks drawn on frames, and an animated GIF of them, to look at what a tracker did."""
import colorsys
import os

import cv2
import numpy as np


def id_colour(track_id):
    """A BGR colour for ``track_id``: hues spread by the golden ratio, so neighbouring ids differ clearly."""
    red, green, blue = colorsys.hsv_to_rgb((track_id * 0.618033988749895) % 1.0, 0.9, 1.0)
    return int(255 * blue), int(255 * green), int(255 * red)


def draw_tracks(frame_bgr, ids, boxes, thickness=2):
    """A copy of ``frame_bgr`` with each ltwh box outlined in its id's colour and the id written above it."""
    image = frame_bgr.copy()
    scale = max(image.shape[0] / 720.0, 0.5)
    for track_id, (left, top, width, height) in zip(np.asarray(ids).tolist(), np.asarray(boxes).tolist()):
        colour = id_colour(track_id)
        corner, opposite = (int(round(left)), int(round(top))), (int(round(left + width)), int(round(top + height)))
        cv2.rectangle(image, corner, opposite, colour, max(1, int(thickness * scale)))
        cv2.putText(image, str(track_id), (corner[0], max(corner[1] - 4, 12)), cv2.FONT_HERSHEY_SIMPLEX, 0.8 * scale,
                    colour, max(1, int(2 * scale)))
    return image


def write_gif(path, frames_bgr, fps, width=480):
    """Write BGR frames as a looping GIF at ``fps``, each resized to ``width`` pixels wide (GIFs grow fast)."""
    from PIL import Image

    pictures = []
    for frame in frames_bgr:
        height = int(round(frame.shape[0] * width / frame.shape[1]))
        small = cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA)
        pictures.append(Image.fromarray(np.ascontiguousarray(small[..., ::-1])).quantize(colors=128))
    if not pictures:
        raise ValueError("no frames to write to %s" % path)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    pictures[0].save(path, save_all=True, append_images=pictures[1:], duration=int(round(1000.0 / fps)), loop=0)
