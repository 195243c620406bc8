"""lnc fastai integration."""
