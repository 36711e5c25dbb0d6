"""The run: the runner, the money order of one attempt, the pool and its meters, the HTTP client,
streaming answers, URL downloads, image saving, progress and the summary."""
