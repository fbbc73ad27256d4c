"""The shared trainer, one cycle of one (strategy, seed) job, the jobs' plain data, and the frozen-backbone linear
probe. Nothing here writes a results folder: workers run this code and hand their results back."""
