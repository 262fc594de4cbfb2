"""LeRobot datasets in and out: read a local v3 dataset, write the progress parquet its training reads.

No ``lerobot`` import: the v3 layout (``meta/info.json``, parquet tables,
per-camera mp4 files holding several episodes each) is read with pyarrow and
PyAV, so the package keeps its own pinned torch and transformers.
"""
