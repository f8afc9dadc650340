"""Models: encoders (plain ``nn.Module``s that return tokens and a pooled feature), fusion blocks
and heads. Submodules are imported explicitly (``migalab.models.encoders.agcn`` ...), so importing
this package loads nothing heavy."""
