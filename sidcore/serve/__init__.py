"""Recommendations out of a trained model: ``sid recommend`` (a file of histories, resumable) and
``sid serve`` (an HTTP API with dynamic batching), both on the eval decoder's jitted function.

`load` opens a model (run dir, HF folder or store URI), `inputs` parses and resolves user histories,
`engine.Recommender` decodes and ranks, `batch` is the file job, `server` the HTTP service.
Importing this package imports neither jax nor the web stack.
"""
