"""The loop a Python user writes instead of the plugin: OpenCV decodes each frame, it is scaled
to the detector's input (long side 640, nearest, as the element's default), normalised as the
model's contract says (BGR minus 104,117,123), run with ONNX Runtime, and the boxes are decoded
from the RetinaFace priors and reduced by NMS (confidence 0.5, IoU 0.4, as the element's
defaults). One frame at a time, as such loops are written. Prints `frames=N faces=M seconds=S`.

    python_loop.py CLIP MODEL
"""
import sys
import time

import cv2
import numpy as np
import onnxruntime as ort


def priors(height, width, steps=(8, 16, 32), min_sizes=((16, 32), (64, 128), (256, 512))):
    out = []
    for step, sizes in zip(steps, min_sizes):
        rows, cols = -(-height // step), -(-width // step)
        for i in range(rows):
            for j in range(cols):
                for s in sizes:
                    out.append(((j + 0.5) * step / width, (i + 0.5) * step / height,
                                s / width, s / height))
    return np.array(out, dtype=np.float32)


def main():
    clip, model = sys.argv[1], sys.argv[2]
    start = time.monotonic()
    session = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    cap = cv2.VideoCapture(clip)
    mean = np.array([104.0, 117.0, 123.0], dtype=np.float32)
    cache = {}
    frames = faces = 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        h, w = frame.shape[:2]
        k = 640 / max(h, w)
        iw, ih = round(w * k), round(h * k)
        img = cv2.resize(frame, (iw, ih), interpolation=cv2.INTER_NEAREST)
        x = (img.astype(np.float32) - mean).transpose(2, 0, 1)[None]
        outs = session.run(None, {input_name: x})
        by_width = {o.shape[-1]: o[0] for o in outs}
        loc, conf = by_width[4], by_width[2]
        if (ih, iw) not in cache:
            cache[(ih, iw)] = priors(ih, iw)
        p = cache[(ih, iw)]
        score = conf[:, 1]
        keep = score > 0.5
        p, loc, score = p[keep], loc[keep], score[keep]
        centre = p[:, :2] + loc[:, :2] * 0.1 * p[:, 2:]
        size = p[:, 2:] * np.exp(loc[:, 2:] * 0.2)
        boxes = np.concatenate([centre - size / 2, size], axis=1) * [w, h, w, h]
        kept = cv2.dnn.NMSBoxes(boxes.tolist(), score.tolist(), 0.5, 0.4)
        faces += len(kept)
        frames += 1
    print(f"frames={frames} faces={faces} seconds={time.monotonic() - start:.3f}")


if __name__ == "__main__":
    main()
