"""Stage 2: gate vectors (trained with the expert frozen) and routing prototypes of an expert."""
