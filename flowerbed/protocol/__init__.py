"""What travels between the ServerApp and the sites: record names, declared metrics, the
model's spec as a record, and the codecs of parameters."""
