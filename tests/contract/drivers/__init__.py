"""One driver per platform; each keeps the construction of its adapter in one function."""
