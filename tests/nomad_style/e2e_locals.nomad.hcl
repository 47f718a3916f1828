# In the style of Nomad's e2e suite: variables with defaults and validation, locals computed
# with format(), runtime ${...} references next to HCL-time ones.
variable "alloc_count" {
  type        = number
  description = "How many copies of the echo task run."
  default     = 2

  validation {
    condition     = var.alloc_count > 0 && var.alloc_count <= 10
    error_message = "Between 1 and 10 copies, please."
  }
}

variable "message" {
  type    = string
  default = "hello"
}

variable "labels" {
  type    = map(string)
  default = { team = "e2e", tier = "batch" }
}

locals {
  job_name = format("echo-%s-%d", var.message, var.alloc_count)
  greeting = format("%s from %s", upper(var.message), "$${NOMAD_ALLOC_ID}")
  env      = { for k, v in var.labels : upper("LABEL_${k}") => v }
}

job "e2e_locals" {
  datacenters = ["dc1"]
  type        = "batch"

  meta {
    name = local.job_name
  }

  group "echo" {
    count = var.alloc_count

    restart {
      attempts = 0
      mode     = "fail"
    }

    task "echo" {
      driver = "exec"

      config {
        command = "/bin/sh"
        args    = ["-c", "echo ${local.greeting} index ${NOMAD_ALLOC_INDEX}; echo $${HOME:-none}"]
      }

      env = merge(local.env, { GREETING = local.greeting })

      resources {
        cpu    = 50
        memory = 64
      }
    }
  }
}
