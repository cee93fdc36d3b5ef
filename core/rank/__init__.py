"""Ranking: features -> conditional-logit model (or the prior) -> proposals, honest evaluation, modes.

Entry points for the daemon: `train.train`, `prior.prior_model`, `propose.propose` /
`propose.review_order`, `modes.decide_mode` and the metric functions in `modes`.
"""
