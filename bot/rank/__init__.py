"""Per-chat ranking (issue 14): features, the per-chat model, topics, reasons.

`features.Space` turns papers and plain words into vectors (TF-IDF + LSA over a background
corpus of real abstracts shipped in bot/data); `model.Model` is a chat's linear model fitted
on its votes; `ranker` blends both with the day's signals and says why each paper is there.
"""
