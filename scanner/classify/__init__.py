"""A calibrated classifier for designs in no signature library: train, predict, explain; safe persistence."""
