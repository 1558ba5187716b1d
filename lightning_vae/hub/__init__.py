"""A model's saved form on disk and on the Hugging Face Hub: the folder format and its checks
(:mod:`.format`), where the files come from (:mod:`.fetch`), the model card (:mod:`.card`) and
the zoo of pretrained models installed with the package (:mod:`.zoo`)."""
