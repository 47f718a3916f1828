# Values for web.nomad.hcl on this machine (a var file holds only name = value lines).
image_dir  = "/srv/www"
replicas   = 2
extra_args = ["--bind", "127.0.0.1"]
