from strategies.base import PoolInputs, Strategy


class Random(Strategy):
    """Uniform random sampling: the baseline every strategy must beat."""

    name = "random"

    def score(self, inputs: PoolInputs):
        return inputs.rng.random(inputs.n)  # [n]
