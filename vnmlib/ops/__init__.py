"""Operating a host: laying out the remotes tree, reading what vnm owns on it, the demo."""
