// Package deploy holds spotflow's deployment files: systemd units, Kubernetes
// manifests and the NATS Helm chart's values. Its tests check them against
// the spotflow binary (deploy_test.go); it has no code of its own.
package deploy
