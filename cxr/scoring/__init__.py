"""``cxr score``: score whole archives into one Parquet file, resumably, on one machine or a Ray cluster.

- :mod:`cxr.scoring.inputs`: files, folders, globs and manifests -> the images to score.
- :mod:`cxr.scoring.rows`: the Parquet schema, flattened from the answer record.
- :mod:`cxr.scoring.store`: atomic parts, resume, the consolidated file and its metadata.
- :mod:`cxr.scoring.work`: read + hash + decode one file; a batch of images -> rows (both engines).
- :mod:`cxr.scoring.local` and :mod:`cxr.scoring.ray_engine`: where that work runs.
- :mod:`cxr.scoring.run`: the run itself (:func:`cxr.scoring.run.score`).
"""
