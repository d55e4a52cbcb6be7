"""Training stages and their orchestration: data (render/ingest), and the stages built on it."""
