// Package v1alpha1 holds the persistence.yawp.dev/v1alpha1 API: the
// PersistenceRollout resource with which a platform team moves schools
// (tenants), cohort by cohort, from write-through to local-first persistence.
//
// The package owns the wire types, their validation markers and the documented
// constants (stages, condition types, reasons). It must not import controller
// or data-plane code.
//
// +kubebuilder:object:generate=true
// +groupName=persistence.yawp.dev
package v1alpha1

import (
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

var (
	// GroupVersion is the group and version of this API.
	GroupVersion = schema.GroupVersion{Group: "persistence.yawp.dev", Version: "v1alpha1"}

	// SchemeBuilder registers this API's types with a runtime.Scheme.
	SchemeBuilder = runtime.NewSchemeBuilder(addKnownTypes)

	// AddToScheme adds this API's types to a scheme.
	AddToScheme = SchemeBuilder.AddToScheme
)

func addKnownTypes(s *runtime.Scheme) error {
	s.AddKnownTypes(GroupVersion, &PersistenceRollout{}, &PersistenceRolloutList{})
	metav1.AddToGroupVersion(s, GroupVersion)
	return nil
}
