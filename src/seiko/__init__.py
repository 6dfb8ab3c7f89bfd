"""seiko: feedback-efficient online fine-tuning of diffusion models (SEIKO)."""
