"""The paper's method (Algorithm 1): fine-tuning (the lower level) and concept removal (the upper
level) in one run, above the generic training core (train/) and the unlearning methods (unlearn/)."""
