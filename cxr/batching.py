"""Serve many callers with one model: requests that arrive while the model runs share its next forward pass."""

from __future__ import annotations

import queue
import threading
from collections import Counter
from concurrent.futures import Future

import numpy as np

from cxr.io import Decoded
from cxr.predictor import Prediction, Predictor


class BatchingPredictor:
    """Thread-safe front of a :class:`~cxr.predictor.Predictor` that runs one batched forward at a time.

    Callers (one thread each, e.g. Gradio's worker threads) decode their own upload, so a bad file fails
    only its own request, then hand the decoded image to :meth:`predict`. One worker thread takes every
    image waiting (up to ``max_batch_size``) and runs them as one :meth:`Predictor.predict_batch`. No
    timer holds a lone request back: a batch is whatever queued up while the previous forward ran, so
    one visitor gets the plain single-image latency and many visitors share forwards instead of
    running several at once, each trying to use every core through torch's threads.

    Args:
        predictor: the loaded model.
        max_batch_size: the most images in one forward pass (bounds its memory).
    """

    def __init__(self, predictor: Predictor, max_batch_size: int = 8) -> None:
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be at least 1, got {max_batch_size}.")
        self.predictor = predictor
        self.max_batch_size = max_batch_size
        self._waiting: queue.SimpleQueue[tuple[Decoded | np.ndarray, Future[Prediction]]] = queue.SimpleQueue()
        self.batch_sizes: Counter[int] = Counter()  # forwards run so far, by batch size
        threading.Thread(target=self._serve, name="cxr-batching", daemon=True).start()

    def predict(self, image: Decoded | np.ndarray) -> Prediction:
        """Prediction for one decoded upload (:func:`cxr.io.decode`) or (H, W) float32 image; blocks until done."""
        done: Future[Prediction] = Future()
        self._waiting.put((image, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            batch = [self._waiting.get()]  # sleeps until a request comes
            while len(batch) < self.max_batch_size:
                try:
                    batch.append(self._waiting.get_nowait())
                except queue.Empty:
                    break
            self.batch_sizes[len(batch)] += 1
            try:
                predictions = self.predictor.predict_batch([image for image, _ in batch], len(batch))
            except Exception as err:  # handed to every caller of this batch, who re-raises it
                for _, done in batch:
                    done.set_exception(err)
                continue
            for (_, done), prediction in zip(batch, predictions, strict=True):
                done.set_result(prediction)
