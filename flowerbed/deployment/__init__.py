"""A real federation: a hospital site folder, its SuperNode, the coordinator SuperLink."""
