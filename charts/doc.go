// Package charts holds the project's Helm charts (persistence-operator/) and
// the test that checks them the way a user meets them: it runs the real helm
// binary (lint, template, values-schema validation) and the real kubectl
// (kustomize of config/), and asserts on what they render.
//
// The package has no non-test code. It must not import controller or
// data-plane packages; internal/contract (constants only) and
// internal/metricnames (the runbook's table of metrics) are the exceptions,
// so that the chart and the binaries agree on paths, labels and metrics.
package charts
