"""The studies: does KECAE help, and which of its options make the exchange work?

Each study works on a finished run folder, trains its sub-runs under ``RUN/studies/<name>/`` (a
rerun reuses finished ones) and writes its section of ``RUN/metrics.json``:

- :mod:`.downstream` (Table II): classifiers on T, T+classic, T', T'+classic, T+mixup at each
  training fraction -> ``downstream``;
- :mod:`.sampling` (Fig. 5): accuracy against N generated pairs -> ``sampling_size``;
- :mod:`.lambda_grid` (Fig. 3): SVM separability over λ1 × λ2 -> ``lambda_grid``;
- :mod:`.ablation`: rows of KECAE options on one budget -> ``ablation``;
- :mod:`.robustness`: the run's recipe trained afresh per seed, every metric with its worst
  seed -> ``robustness``;
- :mod:`.tune` (``kecae tune``): Optuna's search of λ1, λ2, lr and the exchange options on a
  validation objective -> ``tune``.

:mod:`.subruns` holds what they share.
"""
