# expanded.nomad.hcl written out by hand: both must give the same job.
job "expanded_twin" {
  type = "batch"

  group "workers" {
    count = 1

    task "alpha" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "set -x; cat /local/motd"]
      }

      env {
        PEER_0 = "ALPHA"
        PEER_1 = "BETA"
      }

      template {
        data        = "Welcome to the expanded job.\n"
        destination = "local/motd"
      }

      resources {
        memory = 64
      }
    }

    task "beta" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "cat /local/motd"]
      }

      env {
        PEER_0 = "ALPHA"
        PEER_1 = "BETA"
      }

      template {
        data        = "Welcome to the expanded job.\n"
        destination = "local/motd"
      }

      resources {
        memory = 96
      }
    }
  }
}
