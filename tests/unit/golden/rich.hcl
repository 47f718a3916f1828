job "rich" {
  type = "service"
  meta { team = "a" }
  constraint {
    attribute = "${attr.kernel.name}"
    value     = "linux"
  }
  update {
    max_parallel     = 2
    min_healthy_time = "5s"
    auto_revert      = true
  }
  group "g" {
    count = 2
    restart {
      attempts = 3
      delay    = "5s"
    }
    network {
      mode = "bridge"
      port "http" { to = 8080 }
      port "db" { static = 5432 }
      dns { servers = ["1.1.1.1"] }
    }
    volume "data" {
      type      = "host"
      source    = "data"
      read_only = true
    }
    service {
      name     = "rich"
      provider = "nomad"
      port     = "http"
      tags     = ["a"]
      check {
        type     = "http"
        path     = "/health"
        interval = "10s"
        timeout  = "2s"
      }
    }
    task "init" {
      lifecycle {
        hook    = "prestart"
        sidecar = false
      }
      driver = "exec"
      config { command = "/bin/true" }
    }
    task "t" {
      driver = "exec"
      user   = "nobody"
      config {
        command  = "/bin/sleep"
        args     = ["100"]
        cap_drop = ["net_raw"]
      }
      env { A = "1" }
      resources {
        cpu        = 200
        memory     = 64
        memory_max = 128
      }
      logs {
        max_files     = 2
        max_file_size = 5
      }
      volume_mount {
        volume      = "data"
        destination = "/data"
      }
      artifact {
        source      = "https://example.com/a.tgz"
        destination = "local/a"
      }
      template {
        data          = "x"
        destination   = "local/x"
        change_mode   = "signal"
        change_signal = "SIGHUP"
        env           = false
      }
      kill_timeout = "10s"
    }
  }
}
