"""Engine: the hunt pipeline (sources → records → detections → events → findings), embedded or on
Spark, and ``export-events``."""
