"""Engine: the hunt pipeline (sources → records → events → detections → findings)."""
