"""The embedded kit: a procedural task world, a tiny VLM built from transformers classes, its tokenizer, its
pretraining recipe and the cache that keeps both, so that the method runs end to end on a laptop's CPU.

The core (data, models, experts, gates, routing, evaluation, methods) never imports this package: to the core,
the tiny VLM is a checkpoint like any other and the world is a folder of task files like any user's.
"""
