"""stream-forecaster benchmarks: `make bench` (or `python -m benchmarks`)."""
