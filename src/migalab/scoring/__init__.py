"""How predictions become numbers: score-level fusion of checkpoints (:mod:`.ensemble`), the
emotion models' fusion per video (:mod:`.emotion`), the fusion records that carry searched
weights and temperatures between runs (:mod:`.records`), and segment matching and F1 of online
recognition (:mod:`.segments`)."""
