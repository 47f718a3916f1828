# for expressions, conditionals, splats, dynamic blocks and file(): the same job as
# expanded_twin.nomad.hcl, which writes everything out by hand.
locals {
  environment = "staging"
  workers = [
    { name = "alpha", memory = 64, verbose = true },
    { name = "beta", memory = 96, verbose = false },
  ]
}

job "expanded" {
  type = "batch"

  group "workers" {
    count = local.environment == "production" ? 3 : 1

    dynamic "task" {
      for_each = local.workers
      labels   = [task.value.name]

      content {
        driver = "exec"

        config {
          command = "/bin/sh"
          args    = ["-c", task.value.verbose ? "set -x; cat /local/motd" : "cat /local/motd"]
        }

        env = {
          for i, name in local.workers[*].name : "PEER_${i}" => upper(name)
        }

        template {
          data        = file("files/motd.txt")
          destination = "local/motd"
        }

        resources {
          memory = task.value.memory
        }
      }
    }
  }
}
