"""What users run on a trained model: sampling, translation, classification, evaluation, latent walks, projection, weight import, run listings and reports."""
