module kube-upgrade-controllers/hack/release_delta/scan

go 1.26
