"""The hospital's ClientApp and everything a site does in it."""
