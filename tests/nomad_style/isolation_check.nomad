# Written in the style of the exec jobs of Nomad's e2e suite: the same fields, run unchanged.
job "isolation_check" {
  datacenters = ["dc1"]
  type        = "batch"

  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }

  reschedule {
    attempts  = 0
    unlimited = false
  }

  group "print" {
    restart {
      attempts = 0
      mode     = "fail"
    }

    task "env" {
      driver = "exec"

      config {
        command = "/bin/bash"
        args    = ["-c", "echo $NOMAD_ALLOC_DIR; echo $NOMAD_TASK_DIR; echo $NOMAD_SECRETS_DIR; echo $PATH"]
      }

      resources {
        cpu    = 50
        memory = 50
      }
    }
  }
}
