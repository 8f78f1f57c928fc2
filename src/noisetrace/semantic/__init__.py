"""The semantic branch: frozen image encoders (backbones) and how they view an image."""
