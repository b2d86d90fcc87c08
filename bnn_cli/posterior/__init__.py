"""The fitted posterior: its saved parameters (approx.npz) and what is drawn from them."""
