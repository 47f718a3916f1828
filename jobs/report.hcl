# A batch job: runs once to completion, and again only when this file changes.
job "report" {
  type = "batch"

  group "nightly" {
    task "summarize" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo report for ${NOMAD_JOB_NAME} by $(id -un); ls /usr/bin | wc -l > ${NOMAD_ALLOC_DIR}/data/count.txt"]
      }

      resources {
        memory = 32
      }
    }
  }
}
