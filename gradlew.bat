@rem Runs the Gradle version pinned in gradle\wrapper\gradle-wrapper.properties.
@rem The wrapper jar is not in the repository: run "gradle wrapper --gradle-version 8.14.3" once (README).
@echo off
set APP_HOME=%~dp0
set JAR=%APP_HOME%gradle\wrapper\gradle-wrapper.jar
if not exist "%JAR%" (
  echo gradlew: %JAR% is missing; run "gradle wrapper --gradle-version 8.14.3" once, see README 1>&2
  exit /b 1
)
set JAVA_EXE=java.exe
if defined JAVA_HOME set JAVA_EXE=%JAVA_HOME%\bin\java.exe
"%JAVA_EXE%" %JAVA_OPTS% %GRADLE_OPTS% "-Dorg.gradle.appname=gradlew" -classpath "%JAR%" org.gradle.wrapper.GradleWrapperMain %*
