{{/* Names and labels, as `helm create` makes them. */}}
{{- define "retrieval-svc.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "retrieval-svc.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "retrieval-svc.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "retrieval-svc.instanceLabels" -}}
app.kubernetes.io/name: {{ include "retrieval-svc.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/* The server pods; the evaluation CronJob's pods have component "evaluation" and are not selected. */}}
{{- define "retrieval-svc.selectorLabels" -}}
{{ include "retrieval-svc.instanceLabels" . }}
app.kubernetes.io/component: server
{{- end }}

{{- define "retrieval-svc.labels" -}}
helm.sh/chart: {{ include "retrieval-svc.chart" . }}
{{ include "retrieval-svc.instanceLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- with .Values.additionalLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "retrieval-svc.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "retrieval-svc.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "retrieval-svc.image" -}}
{{- $tag := .Values.image.tag | default .Chart.AppVersion }}
{{- if .Values.image.digest }}
{{- printf "%s:%s@%s" .Values.image.repository $tag .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository $tag }}
{{- end }}
{{- end }}

{{/* Where the pod finds its files: one projected volume at /etc/retrieval-svc. */}}
{{- define "retrieval-svc.configDir" -}}/etc/retrieval-svc{{- end }}

{{/* Secret names: the one given (existingSecret) or the one this chart makes. */}}
{{- define "retrieval-svc.keysSecret" -}}
{{- .Values.auth.existingSecret | default (printf "%s-keys" (include "retrieval-svc.fullname" .)) }}
{{- end }}
{{- define "retrieval-svc.tlsSecret" -}}
{{- .Values.tls.existingSecret | default (printf "%s-tls" (include "retrieval-svc.fullname" .)) }}
{{- end }}
{{- define "retrieval-svc.clientCASecret" -}}
{{- .Values.tls.clientAuth.existingSecret | default (printf "%s-client-ca" (include "retrieval-svc.fullname" .)) }}
{{- end }}
{{- define "retrieval-svc.milvusSecret" -}}
{{- .Values.milvus.existingSecret | default (printf "%s-milvus" (include "retrieval-svc.fullname" .)) }}
{{- end }}

{{- define "retrieval-svc.authEnabled" -}}
{{- if or .Values.auth.keys .Values.auth.existingSecret }}true{{ end }}
{{- end }}

{{- define "retrieval-svc.milvusTokenEnabled" -}}
{{- if and (eq .Values.mode "scaleOut") (or .Values.milvus.token .Values.milvus.existingSecret) }}true{{ end }}
{{- end }}

{{/*
The install-time checks: each stops `helm install` with a message that names the value to change,
instead of a pod that cannot start.
*/}}
{{- define "retrieval-svc.validate" -}}
{{- if not (has .Values.mode (list "embedded" "scaleOut")) }}
{{- fail (printf "mode must be embedded or scaleOut, got %q" .Values.mode) }}
{{- end }}
{{- if and (eq .Values.mode "embedded") (gt (int .Values.replicas) 1) }}
{{- fail (printf "mode embedded runs exactly one replica (its store is a SQLite ledger on one volume), got replicas=%d; use mode: scaleOut with Milvus for more" (int .Values.replicas)) }}
{{- end }}
{{- if and (eq .Values.mode "scaleOut") (not .Values.milvus.uri) }}
{{- fail "mode scaleOut keeps its store in Milvus: set milvus.uri (e.g. http://milvus:19530)" }}
{{- end }}
{{- if and (not (include "retrieval-svc.authEnabled" .)) (not .Values.auth.allowUnauthenticated) }}
{{- fail "the server listens on 0.0.0.0 in the pod and refuses to start there without API keys: set auth.keys or auth.existingSecret (docs/security.md), or auth.allowUnauthenticated=true if something in front of it authenticates every caller" }}
{{- end }}
{{- if and .Values.tls.enabled (not .Values.tls.existingSecret) (not (and .Values.tls.cert .Values.tls.key)) }}
{{- fail "tls.enabled needs tls.existingSecret (a kubernetes.io/tls Secret) or both tls.cert and tls.key" }}
{{- end }}
{{- if and .Values.tls.clientAuth.enabled (not .Values.tls.enabled) }}
{{- fail "tls.clientAuth.enabled (mTLS) needs tls.enabled" }}
{{- end }}
{{- if and .Values.tls.clientAuth.enabled (not .Values.tls.clientAuth.existingSecret) (not .Values.tls.clientAuth.ca) }}
{{- fail "tls.clientAuth.enabled needs tls.clientAuth.existingSecret or tls.clientAuth.ca (PEM)" }}
{{- end }}
{{- /* Keys the chart sets itself (see retrieval-svc.managedSettings); a second value would be ignored. */}}
{{- $managed := dict
      "server" (list "host" "port" "metrics_host" "metrics_port")
      "store" (list "path" "backend")
      "auth" (list "keys_file" "allow_unauthenticated")
      "tls" (list "cert_file" "key_file" "client_ca_file" "require_client_auth")
      "milvus" (list "uri" "token" "database" "collection_prefix") }}
{{- range $section, $keys := $managed }}
{{- $given := get $.Values.settings $section | default dict }}
{{- range $keys }}
{{- if hasKey $given . }}
{{- fail (printf "settings.%s.%s is set by the chart; %s" $section . (include "retrieval-svc.managedHint" (printf "%s.%s" $section .))) }}
{{- end }}
{{- end }}
{{- end }}
{{- end }}

{{- define "retrieval-svc.managedHint" -}}
{{- $hints := dict
      "server.host" "it is 0.0.0.0 in the pod"
      "server.metrics_host" "it is 0.0.0.0 in the pod"
      "server.port" "use ports.grpc"
      "server.metrics_port" "use ports.metrics"
      "store.path" "the embedded store is on the volume at /data/store"
      "store.backend" "use mode (embedded or scaleOut)"
      "auth.keys_file" "use auth.keys or auth.existingSecret"
      "auth.allow_unauthenticated" "use auth.allowUnauthenticated"
      "milvus.uri" "use milvus.uri"
      "milvus.token" "use milvus.token or milvus.existingSecret (it must not be in a ConfigMap)"
      "milvus.database" "use milvus.database"
      "milvus.collection_prefix" "use milvus.collectionPrefix" }}
{{- get $hints . | default "use the tls values (tls.enabled, tls.existingSecret, tls.clientAuth)" }}
{{- end }}

{{/*
The settings the chart decides (addresses, the store, files it mounts), as YAML. They go into
settings.yaml over .Values.settings, and the ones the image also sets in its environment go into
the container's environment too (retrieval-svc.imageEnv), because the environment wins over the
file (retrieval_svc/settings.py).
*/}}
{{- define "retrieval-svc.managedSettings" -}}
{{- $dir := include "retrieval-svc.configDir" . -}}
server:
  host: 0.0.0.0
  port: {{ int .Values.ports.grpc }}
  metrics_host: 0.0.0.0
  metrics_port: {{ int .Values.ports.metrics }}
{{- if eq .Values.mode "embedded" }}
store:
  path: /data/store
{{- else }}
store:
  backend: milvus
milvus:
  uri: {{ .Values.milvus.uri | quote }}
  database: {{ .Values.milvus.database | quote }}
  collection_prefix: {{ .Values.milvus.collectionPrefix | quote }}
{{- end }}
auth:
{{- if include "retrieval-svc.authEnabled" . }}
  keys_file: {{ $dir }}/keys.yaml
{{- else }}
  keys_file: ""
  allow_unauthenticated: true
{{- end }}
{{- if .Values.tls.enabled }}
tls:
  cert_file: {{ $dir }}/tls/tls.crt
  key_file: {{ $dir }}/tls/tls.key
  {{- if .Values.tls.clientAuth.enabled }}
  client_ca_file: {{ $dir }}/tls/client-ca.crt
  require_client_auth: true
  {{- end }}
{{- end }}
{{- end }}

{{/* settings.yaml: .Values.settings with the chart's keys laid over it. */}}
{{- define "retrieval-svc.settingsYaml" -}}
{{- $settings := mustMergeOverwrite (deepCopy .Values.settings) (fromYaml (include "retrieval-svc.managedSettings" .)) }}
{{- toYaml $settings }}
{{- end }}

{{/*
The image's Dockerfile sets RETRIEVAL_SVC_SERVER__* and RETRIEVAL_SVC_AUTH__KEYS_FILE, which would
win over settings.yaml; the container sets them to the values in settings.yaml.
*/}}
{{- define "retrieval-svc.imageEnv" -}}
- name: RETRIEVAL_SVC_SERVER__HOST
  value: "0.0.0.0"
- name: RETRIEVAL_SVC_SERVER__PORT
  value: {{ .Values.ports.grpc | quote }}
- name: RETRIEVAL_SVC_SERVER__METRICS_HOST
  value: "0.0.0.0"
- name: RETRIEVAL_SVC_SERVER__METRICS_PORT
  value: {{ .Values.ports.metrics | quote }}
- name: RETRIEVAL_SVC_AUTH__KEYS_FILE
  value: "{{ if include "retrieval-svc.authEnabled" . }}{{ include "retrieval-svc.configDir" . }}/keys.yaml{{ end }}"
{{- if include "retrieval-svc.milvusTokenEnabled" . }}
- name: RETRIEVAL_SVC_MILVUS__TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ include "retrieval-svc.milvusSecret" . }}
      key: {{ .Values.milvus.existingSecretKey | default "token" }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* The projected volume at /etc/retrieval-svc: settings, keys, TLS files. */}}
{{- define "retrieval-svc.configVolume" -}}
- name: config
  projected:
    defaultMode: 0440
    sources:
      - configMap:
          name: {{ include "retrieval-svc.fullname" . }}
          items:
            - key: settings.yaml
              path: settings.yaml
      {{- if include "retrieval-svc.authEnabled" . }}
      - secret:
          name: {{ include "retrieval-svc.keysSecret" . }}
          items:
            - key: {{ .Values.auth.existingSecretKey | default "keys.yaml" }}
              path: keys.yaml
      {{- end }}
      {{- if .Values.tls.enabled }}
      - secret:
          name: {{ include "retrieval-svc.tlsSecret" . }}
          items:
            - key: tls.crt
              path: tls/tls.crt
            - key: tls.key
              path: tls/tls.key
      {{- end }}
      {{- if .Values.tls.clientAuth.enabled }}
      - secret:
          name: {{ include "retrieval-svc.clientCASecret" . }}
          items:
            - key: {{ .Values.tls.clientAuth.existingSecretKey | default "ca.crt" }}
              path: tls/client-ca.crt
      {{- end }}
- name: tmp
  emptyDir:
    {{- with .Values.tmpSizeLimit }}
    sizeLimit: {{ . }}
    {{- end }}
{{- end }}

{{/* One probe: gRPC health (grpc.health.v1, service ""), or a TCP connect when the port speaks TLS. */}}
{{- define "retrieval-svc.probe" -}}
{{- $probe := index .root.Values.probes .name }}
{{- if .root.Values.tls.enabled }}
tcpSocket:
  port: grpc
{{- else }}
grpc:
  port: {{ int .root.Values.ports.grpc }}
  service: ""
{{- end }}
{{- toYaml (omit $probe "enabled") | nindent 0 }}
{{- end }}

{{/*
The pod template shared by the StatefulSet (embedded) and the Deployment (scaleOut).
*/}}
{{- define "retrieval-svc.podTemplate" -}}
metadata:
  annotations:
    checksum/config: {{ include (print $.Template.BasePath "/configmap.yaml") . | sha256sum }}
    {{- if and (include "retrieval-svc.milvusTokenEnabled" .) (not .Values.milvus.existingSecret) }}
    checksum/milvus-secret: {{ include (print $.Template.BasePath "/secret-milvus.yaml") . | sha256sum }}
    {{- end }}
    {{- with .Values.podAnnotations }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  labels:
    {{- include "retrieval-svc.selectorLabels" . | nindent 4 }}
    {{- with .Values.podLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  serviceAccountName: {{ include "retrieval-svc.serviceAccountName" . }}
  automountServiceAccountToken: false
  {{- with .Values.imagePullSecrets }}
  imagePullSecrets:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.priorityClassName }}
  priorityClassName: {{ . }}
  {{- end }}
  securityContext:
    {{- toYaml .Values.podSecurityContext | nindent 4 }}
  terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
  containers:
    - name: retrieval-svc
      image: {{ include "retrieval-svc.image" . | quote }}
      imagePullPolicy: {{ .Values.image.pullPolicy }}
      args: ["serve", "--config", "{{ include "retrieval-svc.configDir" . }}/settings.yaml"]
      env:
        {{- include "retrieval-svc.imageEnv" . | nindent 8 }}
        {{- if eq .Values.mode "scaleOut" }}
        # Scheduled evaluation runs once, in the CronJob, not once per replica.
        - name: RETRIEVAL_SVC_EVALUATION__SCHEDULE_SECONDS
          value: "0"
        {{- end }}
      ports:
        - name: grpc
          containerPort: {{ int .Values.ports.grpc }}
          protocol: TCP
        - name: metrics
          containerPort: {{ int .Values.ports.metrics }}
          protocol: TCP
      {{- if .Values.probes.startup.enabled }}
      startupProbe:
        {{- include "retrieval-svc.probe" (dict "root" . "name" "startup") | nindent 8 }}
      {{- end }}
      {{- if .Values.probes.liveness.enabled }}
      livenessProbe:
        {{- include "retrieval-svc.probe" (dict "root" . "name" "liveness") | nindent 8 }}
      {{- end }}
      {{- if .Values.probes.readiness.enabled }}
      readinessProbe:
        {{- include "retrieval-svc.probe" (dict "root" . "name" "readiness") | nindent 8 }}
      {{- end }}
      resources:
        {{- toYaml .Values.resources | nindent 8 }}
      securityContext:
        {{- toYaml .Values.containerSecurityContext | nindent 8 }}
      volumeMounts:
        - name: config
          mountPath: {{ include "retrieval-svc.configDir" . }}
          readOnly: true
        - name: tmp
          mountPath: /tmp
        {{- if eq .Values.mode "embedded" }}
        - name: data
          mountPath: /data
        {{- end }}
  volumes:
    {{- include "retrieval-svc.configVolume" . | nindent 4 }}
  {{- with .Values.nodeSelector }}
  nodeSelector:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.affinity }}
  affinity:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.tolerations }}
  tolerations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
  {{- with .Values.topologySpreadConstraints }}
  topologySpreadConstraints:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end }}
