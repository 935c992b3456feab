package controllers

import (
	"fmt"
	"maps"
	"strconv"

	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	appsv1ac "k8s.io/client-go/applyconfigurations/apps/v1"
	corev1ac "k8s.io/client-go/applyconfigurations/core/v1"
	metav1ac "k8s.io/client-go/applyconfigurations/meta/v1"
	policyv1ac "k8s.io/client-go/applyconfigurations/policy/v1"

	persistencev1alpha1 "github.com/yawp/persistence-operator/api/v1alpha1"
	"github.com/yawp/persistence-operator/internal/contract"
)

// This file builds the gateway's StatefulSet and Services as server-side
// apply configurations. Applying them with a forced field owner every
// reconcile repairs any drift in the fields we own.

// LabelRollout marks every object the controller makes for a rollout.
const LabelRollout = "persistence.yawp.dev/rollout"

// AnnotationProfiling on a PersistenceRollout, set to "enabled", has its
// gateway pods serve Go's runtime profiles on their loopback (the gateway
// on contract.GatewayPprofPort, the syncer on contract.SyncerPprofPort),
// for `kubectl port-forward` and `go tool pprof`. Setting or removing it
// changes the pod template, so the pods roll. It is an annotation, not a
// spec field: a debugging switch, not part of the rollout's contract.
const AnnotationProfiling = "persistence.yawp.dev/profiling"

// AnnotationSecretVersions, on the gateway's pod template, names the
// resourceVersion of every Secret its containers read through their
// environment (the syncers' database DSN, the token key): environment
// variables are read when a container starts, so a rotated password or
// token key reached no running pod. A Secret that changes changes the
// template, and the StatefulSet rolls its pods onto the new values. The
// versions name no secret material.
const AnnotationSecretVersions = "persistence.yawp.dev/secret-versions"

// profiling reports whether r asks for profiling endpoints.
func profiling(r *persistencev1alpha1.PersistenceRollout) bool {
	return r.Annotations[AnnotationProfiling] == "enabled"
}

// Names of the objects the controller owns for a rollout.
func gatewayName(r *persistencev1alpha1.PersistenceRollout) string { return r.Name + "-gateway" }
func headlessName(r *persistencev1alpha1.PersistenceRollout) string {
	return r.Name + "-gateway-headless"
}

// rolloutKey is how the data plane names a rollout.
func rolloutKey(r *persistencev1alpha1.PersistenceRollout) string { return r.Namespace + "/" + r.Name }

func gatewayLabels(r *persistencev1alpha1.PersistenceRollout) map[string]string {
	l := maps.Clone(contract.GatewayPodLabels)
	l["app.kubernetes.io/instance"], l[LabelRollout] = r.Name, r.Name
	return l
}

func selectorLabels(r *persistencev1alpha1.PersistenceRollout) map[string]string {
	return map[string]string{"app.kubernetes.io/instance": r.Name, LabelRollout: r.Name}
}

func ownerRef(r *persistencev1alpha1.PersistenceRollout) *metav1ac.OwnerReferenceApplyConfiguration {
	return metav1ac.OwnerReference().
		WithAPIVersion(persistencev1alpha1.GroupVersion.String()).
		WithKind("PersistenceRollout").
		WithName(r.Name).
		WithUID(r.UID).
		WithController(true).
		WithBlockOwnerDeletion(true)
}

func hardenedContainer() *corev1ac.SecurityContextApplyConfiguration {
	return corev1ac.SecurityContext().
		WithAllowPrivilegeEscalation(false).
		WithReadOnlyRootFilesystem(true).
		WithRunAsNonRoot(true).
		WithCapabilities(corev1ac.Capabilities().WithDrop("ALL")).
		WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))
}

// startupProbe holds off the liveness probe while a process starts: the
// gateway and the syncer listen only once they have run the schema
// migrations, which wait up to 30 minutes for the migration lock and may
// build an index over the whole save history; the syncer also waits for
// its shard's lock while a predecessor's session lingers. Killed by its
// liveness probe meanwhile, a pod would cut a long migration short at
// every start and never finish it.
func startupProbe(port string) *corev1ac.ProbeApplyConfiguration {
	return httpProbe(contract.PathHealthz, port, 10).WithFailureThreshold(startupChecks)
}

// startupChecks: 10 s apart, 35 minutes in all (the 30 of the migration
// lock's wait, and some).
const startupChecks = 210

func httpProbe(path, port string, period int32) *corev1ac.ProbeApplyConfiguration {
	return corev1ac.Probe().
		WithHTTPGet(corev1ac.HTTPGetAction().WithPath(path).WithPort(intstr.FromString(port))).
		WithPeriodSeconds(period).
		WithTimeoutSeconds(2).
		WithFailureThreshold(3)
}

func fieldEnv(name, path string) *corev1ac.EnvVarApplyConfiguration {
	return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
		WithFieldRef(corev1ac.ObjectFieldSelector().WithFieldPath(path)))
}

func secretEnv(name string, ref persistencev1alpha1.SecretKeyRef) *corev1ac.EnvVarApplyConfiguration {
	return corev1ac.EnvVar().WithName(name).WithValueFrom(corev1ac.EnvVarSource().
		WithSecretKeyRef(corev1ac.SecretKeySelector().WithName(ref.Name).WithKey(ref.Key)))
}

func resources(r *persistencev1alpha1.PersistenceRollout) *corev1ac.ResourceRequirementsApplyConfiguration {
	res := corev1ac.ResourceRequirements()
	if len(r.Spec.Gateway.Resources.Requests) > 0 {
		res.WithRequests(r.Spec.Gateway.Resources.Requests)
	}
	if len(r.Spec.Gateway.Resources.Limits) > 0 {
		res.WithLimits(r.Spec.Gateway.Resources.Limits)
	}
	return res
}

// gatewayStatefulSet is the desired StatefulSet: one pod per shard, the
// gateway and its syncer sidecar from the one project image. owned=false
// leaves out the owner reference (the rollout is being deleted with the
// Retain policy and the gateway must outlive it).
func gatewayStatefulSet(r *persistencev1alpha1.PersistenceRollout, owned bool) *appsv1ac.StatefulSetApplyConfiguration {
	shards := r.Spec.Gateway.Shards
	pull := r.Spec.Gateway.ImagePullPolicy
	if pull == "" {
		pull = corev1.PullIfNotPresent
	}
	common := []*corev1ac.EnvVarApplyConfiguration{
		fieldEnv(contract.EnvPodName, "metadata.name"),
		fieldEnv(contract.EnvNamespace, "metadata.namespace"),
		corev1ac.EnvVar().WithName(contract.EnvRollout).WithValue(rolloutKey(r)),
		corev1ac.EnvVar().WithName(contract.EnvShards).WithValue(strconv.Itoa(int(shards))),
	}
	gatewayEnv := append([]*corev1ac.EnvVarApplyConfiguration{}, common...)
	gatewayEnv = append(gatewayEnv, corev1ac.EnvVar().WithName(contract.EnvPeerPattern).
		WithValue(fmt.Sprintf("http://%s-%%d.%s.%s.svc:%d", gatewayName(r), headlessName(r), r.Namespace, contract.GatewayPort)),
		// In the environment, not a flag: spec.gateway.image may still be
		// an earlier release's, whose gateway would exit on a flag it does
		// not define (contract.EnvSpoolDir).
		corev1ac.EnvVar().WithName(contract.EnvSpoolDir).WithValue(contract.GatewaySpoolDir))
	syncerEnv := append([]*corev1ac.EnvVarApplyConfiguration{}, common...)
	dsn := r.Spec.Database.SecretRef
	if ref := r.Spec.Database.ServiceSecretRef; ref != nil {
		dsn = *ref // a yawp_service member: cannot disable the ledger's protection
	}
	syncerEnv = append(syncerEnv, secretEnv(contract.EnvDatabaseURL, dsn),
		// The syncer takes no shard in a database whose rollout of this
		// name another object registered (another cluster's).
		corev1ac.EnvVar().WithName(contract.EnvRolloutUID).WithValue(string(r.UID)))
	if _, limited := r.Spec.Gateway.Resources.Limits[corev1.ResourceMemory]; limited {
		// The syncer's own memory limit: it sizes its Go heap and its
		// document cache to it (gotune). Only when there is one: without
		// a limit the kubelet answers limits.memory with the node's
		// allocatable memory, and a syncer told that would let its heap
		// grow towards the whole node and cache a third of it (instead
		// of the default collector and a 512 MiB cache).
		syncerEnv = append(syncerEnv, corev1ac.EnvVar().WithName(contract.EnvMemoryLimit).WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithResource("limits.memory"))))
		// The gateway's too: its Go heap gets a soft limit under it, so a
		// burst (a classroom opening one large document at once) makes
		// its collector work harder instead of the pod being killed.
		gatewayEnv = append(gatewayEnv, corev1ac.EnvVar().WithName(contract.EnvMemoryLimit).WithValueFrom(corev1ac.EnvVarSource().
			WithResourceFieldRef(corev1ac.ResourceFieldSelector().WithResource("limits.memory"))))
	}
	if n := r.Spec.Gateway.MaxConnections; n != nil {
		// In the environment, not a flag (contract.EnvSyncMaxConns): an
		// earlier release's gateway goes on without the bound.
		gatewayEnv = append(gatewayEnv, corev1ac.EnvVar().WithName(contract.EnvSyncMaxConns).WithValue(strconv.Itoa(int(*n))))
	}
	if ref := r.Spec.Gateway.TokenSecretRef; ref != nil {
		// The gateway verifies client tokens with the key; both containers
		// derive the pod-internal API token from it.
		gatewayEnv = append(gatewayEnv, secretEnv(contract.EnvTokenKey, *ref))
		syncerEnv = append(syncerEnv, secretEnv(contract.EnvTokenKey, *ref))
	}
	// The syncer's tuning; unset knobs keep the binary's defaults.
	sy := r.Spec.Gateway.Syncer
	if sy.BackfillRate != nil {
		syncerEnv = append(syncerEnv, corev1ac.EnvVar().WithName(contract.EnvBackfillRate).WithValue(strconv.Itoa(int(*sy.BackfillRate))))
	}
	if d := sy.FullVerificationInterval; d != nil {
		syncerEnv = append(syncerEnv, corev1ac.EnvVar().WithName(contract.EnvVerifyFullEvery).WithValue(d.Duration.String()))
	}
	if d := sy.EvidenceGapAfter; d != nil {
		syncerEnv = append(syncerEnv, corev1ac.EnvVar().WithName(contract.EnvGapAfter).WithValue(d.Duration.String()))
	}
	tmp := corev1ac.VolumeMount().WithName("tmp").WithMountPath("/tmp")
	gatewayArgs := []string{fmt.Sprintf("--listen=:%d", contract.GatewayPort),
		fmt.Sprintf("--syncer=http://127.0.0.1:%d", contract.SyncerPort),
		fmt.Sprintf("--metrics-listen=:%d", contract.GatewayMetricsPort)}
	syncerArgs := []string{fmt.Sprintf("--listen=:%d", contract.SyncerPort),
		fmt.Sprintf("--metrics-listen=:%d", contract.SyncerMetricsPort)}
	if profiling(r) {
		// Loopback only: reached through kubectl port-forward, never
		// through a Service or another pod.
		gatewayArgs = append(gatewayArgs, fmt.Sprintf("--pprof-listen=127.0.0.1:%d", contract.GatewayPprofPort))
		syncerArgs = append(syncerArgs, fmt.Sprintf("--pprof-listen=127.0.0.1:%d", contract.SyncerPprofPort))
	}

	gateway := corev1ac.Container().
		WithName(contract.ContainerGateway).
		WithImage(r.Spec.Gateway.Image).
		WithImagePullPolicy(pull).
		WithCommand(contract.BinaryGateway).
		WithArgs(gatewayArgs...).
		WithPorts(
			corev1ac.ContainerPort().WithName(contract.GatewayPortName).WithContainerPort(contract.GatewayPort),
			corev1ac.ContainerPort().WithName(contract.MetricsPortName).WithContainerPort(contract.GatewayMetricsPort)).
		WithEnv(gatewayEnv...).
		WithStartupProbe(startupProbe(contract.GatewayPortName)).
		WithReadinessProbe(httpProbe(contract.PathReadyz, contract.GatewayPortName, 5)).
		WithLivenessProbe(httpProbe(contract.PathHealthz, contract.GatewayPortName, 10)).
		WithResources(resources(r)).
		WithSecurityContext(hardenedContainer()).
		WithVolumeMounts(tmp)
	syncer := corev1ac.Container().
		WithName(contract.ContainerSyncer).
		WithImage(r.Spec.Gateway.Image).
		WithImagePullPolicy(pull).
		WithCommand(contract.BinarySyncer).
		WithArgs(syncerArgs...).
		WithPorts(
			corev1ac.ContainerPort().WithName(contract.SyncerPortName).WithContainerPort(contract.SyncerPort),
			corev1ac.ContainerPort().WithName(contract.SyncerMetricsPortName).WithContainerPort(contract.SyncerMetricsPort)).
		WithEnv(syncerEnv...).
		WithStartupProbe(startupProbe(contract.SyncerPortName)).
		WithReadinessProbe(httpProbe(contract.PathReadyz, contract.SyncerPortName, 5)).
		WithLivenessProbe(httpProbe(contract.PathHealthz, contract.SyncerPortName, 10)).
		WithResources(resources(r)).
		WithSecurityContext(hardenedContainer()).
		WithVolumeMounts(tmp)

	podSpec := corev1ac.PodSpec().
		WithAutomountServiceAccountToken(false).
		WithTerminationGracePeriodSeconds(30).
		WithSecurityContext(corev1ac.PodSecurityContext().
			WithRunAsNonRoot(true).
			WithRunAsUser(65532).
			WithRunAsGroup(65532).
			WithFSGroup(65532).
			WithSeccompProfile(corev1ac.SeccompProfile().WithType(corev1.SeccompProfileTypeRuntimeDefault))).
		WithContainers(gateway, syncer).
		WithVolumes(corev1ac.Volume().WithName("tmp").WithEmptyDir(corev1ac.EmptyDirVolumeSource())).
		// Shards spread over nodes where the scheduler can: one node lost
		// takes as few shards as it may. Preferred, never required: a
		// cluster with fewer nodes than shards still runs them all.
		WithTopologySpreadConstraints(corev1ac.TopologySpreadConstraint().
			WithMaxSkew(1).
			WithTopologyKey(corev1.LabelHostname).
			WithWhenUnsatisfiable(corev1.ScheduleAnyway).
			WithLabelSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(r))))
	// Left out when unset: applied without them, the field is dropped
	// from the pod template once a person removes them from the spec.
	for _, s := range r.Spec.Gateway.ImagePullSecrets {
		podSpec.WithImagePullSecrets(corev1ac.LocalObjectReference().WithName(s.Name))
	}

	sts := appsv1ac.StatefulSet(gatewayName(r), r.Namespace).
		WithLabels(gatewayLabels(r)).
		WithSpec(appsv1ac.StatefulSetSpec().
			WithReplicas(shards).
			WithServiceName(headlessName(r)).
			WithPodManagementPolicy("Parallel").
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(r))).
			WithTemplate(corev1ac.PodTemplateSpec().
				WithLabels(gatewayLabels(r)).
				WithSpec(podSpec)))
	if owned {
		sts.WithOwnerReferences(ownerRef(r))
	}
	return sts
}

// gatewayServices are the headless Service (stable pod names for
// forwarding between shards) and the client Service.
func gatewayServices(r *persistencev1alpha1.PersistenceRollout, owned bool) []*corev1ac.ServiceApplyConfiguration {
	headless := corev1ac.Service(headlessName(r), r.Namespace).
		WithLabels(gatewayLabels(r)).
		WithSpec(corev1ac.ServiceSpec().
			WithClusterIP(corev1.ClusterIPNone).
			WithPublishNotReadyAddresses(true).
			WithSelector(selectorLabels(r)).
			WithPorts(
				corev1ac.ServicePort().WithName(contract.GatewayPortName).WithPort(contract.GatewayPort).
					WithTargetPort(intstr.FromString(contract.GatewayPortName)),
				corev1ac.ServicePort().WithName(contract.SyncerPortName).WithPort(contract.SyncerPort).
					WithTargetPort(intstr.FromString(contract.SyncerPortName))))
	client := corev1ac.Service(gatewayName(r), r.Namespace).
		WithLabels(gatewayLabels(r)).
		WithSpec(corev1ac.ServiceSpec().
			WithType(corev1.ServiceTypeClusterIP).
			WithSelector(selectorLabels(r)).
			WithPorts(corev1ac.ServicePort().WithName(contract.GatewayPortName).WithPort(80).
				WithTargetPort(intstr.FromString(contract.GatewayPortName))))
	if owned {
		headless.WithOwnerReferences(ownerRef(r))
		client.WithOwnerReferences(ownerRef(r))
	}
	return []*corev1ac.ServiceApplyConfiguration{headless, client}
}

// gatewayDisruptionBudget lets a voluntary disruption (a node drain, a
// cluster upgrade) take at most one gateway pod at a time. Without it a
// drain of the node holding them evicted every shard at once: no student's
// save was accepted anywhere until the pods came back. A pod that is not
// ready may always be evicted (it serves nobody), so a crash-looping shard
// never blocks a drain.
func gatewayDisruptionBudget(r *persistencev1alpha1.PersistenceRollout, owned bool) *policyv1ac.PodDisruptionBudgetApplyConfiguration {
	pdb := policyv1ac.PodDisruptionBudget(gatewayName(r), r.Namespace).
		WithLabels(gatewayLabels(r)).
		WithSpec(policyv1ac.PodDisruptionBudgetSpec().
			WithMaxUnavailable(intstr.FromInt32(1)).
			WithUnhealthyPodEvictionPolicy(policyv1.AlwaysAllow).
			WithSelector(metav1ac.LabelSelector().WithMatchLabels(selectorLabels(r))))
	if owned {
		pdb.WithOwnerReferences(ownerRef(r))
	}
	return pdb
}
