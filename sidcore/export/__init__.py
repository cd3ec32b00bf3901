"""Turning a run's checkpoint into other formats: ``sid export hf`` (`hf`: an HF folder)."""
