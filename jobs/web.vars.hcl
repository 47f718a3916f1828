# Values for web.hcl on this machine: a var file holds only `name = value` lines.
replicas = 2
