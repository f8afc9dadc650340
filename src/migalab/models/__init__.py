"""Models: encoders (plain ``nn.Module``s returning an
:class:`~migalab.models.encoders.output.EncoderOutput`), fusion necks (several encoders' outputs
-> one ``EncoderOutput``), heads, label embeddings and fine-tuning / initial weights. Submodules
are imported explicitly (``migalab.models.encoders.agcn`` ...), so importing this package loads
nothing heavy."""
