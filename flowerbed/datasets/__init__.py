"""Reading a site's images, splitting one dataset into sites, the synthetic default."""
