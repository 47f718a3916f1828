# Lifecycle: a prestart task prepares shared data in /alloc before the main task starts.
job "seeded" {
  update {
    max_parallel     = 1
    min_healthy_time = "2s"
    auto_revert      = true
  }

  group "app" {
    task "seed" {
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "echo seeded-at-$(date +%s) > ${NOMAD_ALLOC_DIR}/data/seed.txt"]
      }
      resources {
        memory = 16
      }
    }

    task "app" {
      driver = "exec"
      config {
        command = "/bin/sh"
        args    = ["-c", "cat /alloc/data/seed.txt; exec sleep 100000"]
      }
      resources {
        memory = 32
      }
    }
  }
}
