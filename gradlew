#!/bin/sh
# Runs the Gradle version pinned in gradle/wrapper/gradle-wrapper.properties (downloaded once,
# checked against distributionSha256Sum). The wrapper jar is not in the repository: create it
# once with any installed Gradle, `gradle wrapper --gradle-version 8.14.3` (which also rewrites
# this script with Gradle's own), or copy it from an Android Studio project of the same version.
set -e
APP_HOME=$(cd "$(dirname "$0")" && pwd -P)
JAR="$APP_HOME/gradle/wrapper/gradle-wrapper.jar"
if [ ! -f "$JAR" ]; then
    echo "gradlew: $JAR is missing; run 'gradle wrapper --gradle-version 8.14.3' once (see README)" >&2
    exit 1
fi
if [ -n "$JAVA_HOME" ]; then JAVA="$JAVA_HOME/bin/java"; else JAVA=java; fi
if ! command -v "$JAVA" >/dev/null 2>&1; then
    echo "gradlew: no java found (set JAVA_HOME to a JDK 17+)" >&2
    exit 1
fi
# shellcheck disable=SC2086 # JAVA_OPTS and GRADLE_OPTS are word lists by convention
exec "$JAVA" $JAVA_OPTS $GRADLE_OPTS "-Dorg.gradle.appname=gradlew" \
    -classpath "$JAR" org.gradle.wrapper.GradleWrapperMain "$@"
